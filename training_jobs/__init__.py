"""Django-free training library (stages PT, SFT, RM, PPO, DPO on DeepSpeed).

Contract with the web app: a job config (JSON) in, progress events (JSON
lines on stdout) and an output folder out, through `python -m training_jobs`.
This package must never import `webapp`. Filled in by the training-core issue.
"""
