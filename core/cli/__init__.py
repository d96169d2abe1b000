"""What the command line shares with the core: how to print a command the user can run as printed."""
