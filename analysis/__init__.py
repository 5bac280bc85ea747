"""Loading results and turning them into tables and figures."""
