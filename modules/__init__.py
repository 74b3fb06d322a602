"""CDKTF constructs for an Airflow platform on AWS.

Apps call `modules.jsii_runtime.install()` before importing any construct module: it selects the
virtualenv's Node for jsii and enables the fast provider imports (see jsii_runtime).
"""
