"""Studies: several trainings, one table and one figure that answer one question."""
