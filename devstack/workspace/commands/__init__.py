"""Command Execution API 1.2: execution contexts and commands on all-purpose clusters."""
