"""Spreading model calls over replicas on many machines with Ray."""
