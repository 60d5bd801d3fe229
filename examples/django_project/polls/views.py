from django.shortcuts import get_object_or_404, render

from .models import Question
from .utils import headline


def index(request):
    latest = Question.objects.order_by('-pub_date')[:5]
    context = {'headline': headline(len(latest)), 'latest_question_list': latest}
    return render(request, 'polls/index.html', context)


def detail(request, question_id):
    question = get_object_or_404(Question, pk=question_id)
    return render(request, 'polls/detail.html', {'question': question})
