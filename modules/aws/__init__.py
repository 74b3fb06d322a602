"""AWS infrastructure constructs (the infra and state stacks): network, keys, EKS, database, cache, buckets, front door, events, alerting, workload identities."""
