"""Alarm core, grading, hazard assessment and escalation."""
