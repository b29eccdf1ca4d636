"""Laptop tools: the local broker, the demo, the dashboard, the traffic generator and the
child processes they start. Production code never imports this package; the command line
names its commands by "module:attribute" and imports them only when they are called."""
