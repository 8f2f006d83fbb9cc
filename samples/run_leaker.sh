#!/bin/sh
# run_leaker.sh: a shell script that starts a leaking program, as service start scripts and
# wrappers do.
#
# The shell (/bin/sh) prints a line, runs PROGRAM ARGS as a child process (fork + exec: the
# command is not the script's last, so the shell cannot exec it in its own place), prints
# another line and exits with PROGRAM's status.
#
# What it leaks: what PROGRAM leaks, in the shell's child (the tests run steady_leaker.c: about
# 100 blocks of 1000 bytes a second through remember_session). The shell itself leaks nothing
# that grows.
# A correct report of a recording of the script: the child (parent pid: the shell's) has a
# `leak` candidate through PROGRAM's leaking function; the shell has no `leak`.
#
# Usage: run_leaker.sh PROGRAM [ARGS...]
set -e
echo "run_leaker: starting $1"
"$@"
echo "run_leaker: $1 finished"
