"""The checks of check_deploy.py, one module per area."""
