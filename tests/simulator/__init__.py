"""Tests of the Graph + Entra simulator."""
