"""Networks and layers. Nothing here knows a loss, a schedule or a config file."""
