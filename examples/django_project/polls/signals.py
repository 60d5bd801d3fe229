import logging

from django.db.models.signals import post_save
from django.dispatch import receiver

from .models import Question

log = logging.getLogger(__name__)


@receiver(post_save, sender=Question)
def announce(sender, instance, created, **kwargs):
    log.warning('%s question: %s', 'new' if created else 'changed', instance)
