"""Cluster jobs: splitting stages into tasks and the Slurm/HTCondor/local schedulers."""
