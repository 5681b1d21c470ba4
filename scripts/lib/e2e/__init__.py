"""scripts/e2e as a package (scripts/e2e says what the scenario does):
config, report (verdicts), services, nginx, instances, clients, scenario,
checks, and main (command line, time limit, teardown)."""
