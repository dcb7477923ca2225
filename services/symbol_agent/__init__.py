"""The symbol agent service: one batched policy call per step for all its symbols."""
