#pragma once
// Pictures of a finished run from scripts/plot.py (Debian's python3 with python3-matplotlib):
// mart-train's curves.png and mart-eval's results.png. Optional: without python3 or matplotlib
// the stage says so in one line and goes on; a plot that fails never fails the stage.
#include <string>

namespace mart::app {

// Runs `plot.py <kind> <dir>` ("curves" or "results") and returns the image's path, or "" when no
// image was made (the reason is logged). MART_PLOT=0 turns plots off; MART_PYTHON names another
// interpreter (default /usr/bin/python3, where Debian's matplotlib is).
std::string plot(const std::string& kind, const std::string& dir);

}  // namespace mart::app
