def headline(count):
    """The page's title for ``count`` questions: edit it and reload the page."""
    return f'{count} questions' if count != 1 else 'one question'
