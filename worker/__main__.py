"""`python -m worker` is `teams-notify`."""

from worker.cli import main

main()
