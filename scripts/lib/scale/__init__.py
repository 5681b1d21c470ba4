"""scripts/scale's modules: run sizes (config), the run (scenario), its
verdicts (checks) and docs/scale.md (report)."""
