"""Cross-cutting policy and helpers every construct uses: the policy pack and tagging (aspects), IAM policy documents, validation (ConfigError), token checks."""
