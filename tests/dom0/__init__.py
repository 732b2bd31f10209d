"""Tests of labs.dom0: toolstack, configs, storage, runner."""
