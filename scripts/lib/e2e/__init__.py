"""scripts/e2e as a package (scripts/e2e says what the scenario does):
config (settings, verdicts), services, nginx, instances (and client
connections), scenario, checks, and main (command line, time limit, teardown)."""
