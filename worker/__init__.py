"""The teams-notify worker fleet: Celery tasks that deliver activity-feed notifications through Graph."""
