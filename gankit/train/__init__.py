"""Training: the loop, who-trains-when schedules, and the generator's EMA."""
