"""The judging core of evaluations, free of Django so that it can be tested
and benchmarked alone: judge prompts, reply parsing, the position-swap
outcome, the report arithmetic, stratified sampling and the judge client.
Nothing here imports django or webapp.* outside this package."""
