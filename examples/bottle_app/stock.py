"""What the shop sells."""

ITEMS = ["apple", "pear"]
