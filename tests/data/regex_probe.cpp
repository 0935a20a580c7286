// The device-string parse that torch's AOTInductor runtime header (model_base.h, parse_device_str)
// compiles into every package, alone in a shared library: does it crash outside AOTInductor too?
// (tests/test_cxx.py builds it with a statically and a dynamically linking compiler.)
#include <regex>
#include <string>

extern "C" int probe_regex(const char* text) {
  std::regex re("(cpu|cuda|xpu|mps)(:([0-9]+))?");
  std::smatch sm;
  std::string s(text);
  if (!std::regex_match(s, sm, re)) return -1;
  return sm[3].matched ? std::stoi(sm[3].str()) : 0;
}
