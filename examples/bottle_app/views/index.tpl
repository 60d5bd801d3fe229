<h1>In stock</h1>
<ul>
% for item in items:
  <li>{{item}}</li>
% end
</ul>
