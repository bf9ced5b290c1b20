"""``hydra/launcher=slurm`` (conf/hydra/launcher/slurm.yaml): submitit's SLURM launcher, whose jobs run as before,
with one change where the sweep starts: when sbatch refuses the jobs (a partition the cluster lacks, more memory
or time than it allows, no cluster configured here), the sweep ends with sbatch's reason in one sentence, not
submitit's traceback. Hydra finds launchers only in the hydra_plugins namespace, so it lives here."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hydra.errors import CompactHydraException
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher as SubmititSlurmLauncher


class SbatchRefused(CompactHydraException):
    """Hydra prints a CompactHydraException's text alone, and the command exits 1."""


class SlurmLauncher(SubmititSlurmLauncher):
    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Any:
        from submitit.core.utils import FailedJobError

        try:
            return super().launch(job_overrides, initial_job_idx)
        except FailedJobError as err:
            said = [line.strip() for line in str(err).splitlines() if "error:" in line or "fatal:" in line]
            reason = said[0] if said else str(err).strip().splitlines()[-1]  # the first says the most
            raise SbatchRefused(
                f"error: sbatch refused the sweep's jobs ({reason}); nothing was submitted. Change the "
                "hydra.launcher.* setting it names (sinfo lists the partitions and their limits), or run where "
                "SLURM is set up, and start the sweep again."
            ) from None
