from django import template

register = template.Library()


@register.filter
def votes(count):
    return f'{count} vote' + ('' if count == 1 else 's')
