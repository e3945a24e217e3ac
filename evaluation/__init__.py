"""Did training help? Win rate against the base policy, preference accuracy, reports."""
