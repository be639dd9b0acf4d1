"""Launchers: where a bench's trainings run (this machine's processes, SLURM through submitit,
a Ray cluster), chosen with `kptoolkit bench --launcher NAME` and found through the entry-point
group `kptoolkit.launchers`."""
