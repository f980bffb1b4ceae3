#!/bin/busybox sh
# The test guest's command shell, served on /dev/ttyS1 (a unix socket on the
# host). Each line read is one shell command; its output is followed by a line
# "VMPULSE-END <status>" so the host knows where the reply ends.
# Non-interactive on purpose: no prompts, no echo, nothing but replies.
while IFS= read -r line; do
  ( eval "$line" )
  echo "VMPULSE-END $?"
done
