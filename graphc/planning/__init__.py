"""Scheduling: the fused lowering (schedule), the blocked planner (blocked), the one
Plan type they make (plan) and the plan cache (plancache).
"""
