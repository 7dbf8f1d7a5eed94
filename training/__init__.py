"""Ray Train jobs (ordered SFT, GRPO), evaluation, and tiny offline models."""
