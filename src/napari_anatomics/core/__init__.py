"""Foundations every stage shares: the Volume type, the job protocol, the runtime, numerics."""
