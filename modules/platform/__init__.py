"""In-cluster platform (the platform and vault-config stacks): Helm releases and their values for the add-ons, Airflow, Vault and monitoring, the local charts, and Vault's own configuration."""
