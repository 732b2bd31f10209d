"""The RQ jobs a dom0 worker runs: the bridge from Task rows to a dom0.

One module per concern:
- `progress`: a job's claim, its steps as they happen (Recorder, ProgressWriter) and its outcome;
- `guest`: `run_task` and the handler of each guest action in `labs.services.registry`;
- `host`: state sync and health checks, queued by the sync loop;
- `template`: template builds;
- `worker`: HostWorker, the worker class every dom0 runs;
- `pool`: the host's worker pool of HostWorkers, sized by Host.jobs_at_a_time (`manage.py host_worker`);
- `connect`: the dom0 a job works on.

Only workers import this package; services queue jobs by name
(`labs.services.queueing.JOBS`).
"""

from labs.jobs.worker import HostWorker

__all__ = ["HostWorker"]
