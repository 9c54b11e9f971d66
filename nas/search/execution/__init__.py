"""Execution: workers that claim a study's queued trials and run them (`worker`, `objective`,
`twins`), their heartbeats (`liveness`) and share of the cores (`cores`); or a user's own
objective (`native`)."""
