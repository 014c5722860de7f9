"""Process supervision: the servers Perennial starts, watches and stops.

- `processes`: start, stop and check a process by the pid and start time recorded when it
  started (liveness itself is `tasks.core.processes.pid_alive`, the one check of the project).
- `prefect_server`: the locked-down Prefect server command line both modes below start.
- served mode (`make up` / `make down`: `python -m flows.supervision.served_stack`):
  `served_settings` (state folder, databases, environments, credentials), `deployments`
  (prefect.yaml rendered per dataset) and `served_stack` (up, down, status).
- `local_server`: the CLI's shared local Prefect server, started once and reused.
- `ephemeral_server`: Prefect's temporary server, bound to the command that starts it.

`flows/serve.py`, the scoring app that served mode starts, is not supervision: it lives apart.
"""
