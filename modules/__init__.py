"""CDKTF constructs for an Airflow platform on AWS.

Nothing here patches the runtime. An app may call `fastsynth.install()` (a separate package) before importing
cdktf for a faster synth with the same output; the constructs work the same without it.
"""
