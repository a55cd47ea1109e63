#!/bin/sh
# The image's entrypoint: `cml` for cml arguments, the command itself otherwise.
#
#   docker run IMAGE runner --repo ...   -> cml runner --repo ...
#   docker run IMAGE pr create '*.csv'   -> cml pr create '*.csv' (not coreutils' pr)
#   docker run IMAGE --help              -> cml --help
#   docker run IMAGE bash -c '...'       -> bash -c '...'
#
# Running any other program as is keeps the image usable as a CI job image: GitLab's Docker
# executor starts jobs through the entrypoint with a shell command, and GitHub's job
# containers replace the entrypoint anyway. A word that is no program on PATH goes to cml too,
# so its error message names the unknown subcommand.
set -e
if [ "$#" -eq 0 ]; then
  set -- cml
fi
case "$1" in
  runner | comment | send-comment | check | send-github-check | asset | publish | pr | ci | help | -*)
    set -- cml "$@"
    ;;
  *)
    command -v "$1" >/dev/null 2>&1 || set -- cml "$@"
    ;;
esac
exec "$@"
