"""aebench's submitit launchers, where Hydra looks for launchers: the ``hydra_plugins`` namespace.

Hydra instantiates only plugin classes defined under ``hydra_plugins``; what these add to
hydra-submitit-launcher's is in :mod:`aebench.launchers`.  Without that plugin (aebench
installed without its ``[sweeps]`` extra) there is nothing to extend, and nothing is defined.
"""

try:
    from hydra_plugins.hydra_submitit_launcher import submitit_launcher as _submitit
except ImportError:
    _submitit = None

if _submitit is not None:
    from aebench.launchers import SweepThatHoldsUp

    class SlurmLauncher(SweepThatHoldsUp, _submitit.SlurmLauncher):
        """``hydra/launcher=submitit_slurm``: jobs on a Slurm cluster, one job array per sweep."""

    class LocalLauncher(SweepThatHoldsUp, _submitit.LocalLauncher):
        """``hydra/launcher=submitit_local``: the same jobs through submitit on this machine."""
