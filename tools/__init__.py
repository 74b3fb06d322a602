"""Command-line tools around the synthesized stacks: the PR plan report and the emulator deploy rehearsal."""
