"""`python -m worker` is `teams-notify`."""

from worker.launcher import main

main()
