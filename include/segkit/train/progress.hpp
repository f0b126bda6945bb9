// segkit/train/progress.hpp — the trainer's console output: a one-line progress bar redrawn
// in place on a terminal, or plain log lines (a pipe, a file, CI).
// Provides: train::progress_mode, train::progress_snapshot, train::progress_printer,
// train::format_duration, train::is_terminal.
// Requires: a FILE* that outlives the printer (nullptr = print nothing).
// Guarantees: bar mode redraws at most ~10 times a second (plus every log and the last
// iteration), and message() clears the bar, prints the text on its own line and redraws, so
// messages never mix with the bar; finish() ends the bar's line. Lines mode prints one line
// per log() call and ignores update().
#pragma once
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#if defined(__unix__) || defined(__APPLE__)
#include <unistd.h>
#endif

namespace segkit::train {

enum class progress_mode {
  automatic,  // bar when the stream is a terminal, lines otherwise
  bar,
  lines,
  off,
};

inline bool is_terminal(std::FILE* stream) {
#if defined(__unix__) || defined(__APPLE__)
  return stream != nullptr && ::isatty(::fileno(stream)) == 1;
#else
  (void)stream;
  return false;
#endif
}

// "1h02m", "4m18s", "12s", "--" for unknown.
inline std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "--";
  const long long s = static_cast<long long>(seconds + 0.5);
  char text[32];
  if (s >= 3600)
    std::snprintf(text, sizeof text, "%lldh%02lldm", s / 3600, (s % 3600) / 60);
  else if (s >= 60)
    std::snprintf(text, sizeof text, "%lldm%02llds", s / 60, s % 60);
  else
    std::snprintf(text, sizeof text, "%llds", s);
  return text;
}

// What one progress line shows.
struct progress_snapshot {
  int64_t iteration = 0;  // steps completed
  int64_t total = 0;
  double iterations_per_second = 0;
  double eta_seconds = NAN;
  double loss = NAN;                                       // weighted total
  std::vector<std::pair<std::string, double>> terms;       // named loss terms
  double lr = 0;
  double data_wait_fraction = 0;  // share of the wall time next() spent blocked
};

class progress_printer {
 public:
  progress_printer(std::FILE* stream, progress_mode mode) : stream_(stream) {
    if (mode == progress_mode::automatic)
      mode = is_terminal(stream) ? progress_mode::bar : progress_mode::lines;
    mode_ = stream ? mode : progress_mode::off;
  }
  progress_mode mode() const { return mode_; }

  // Every iteration: redraws the bar (throttled); nothing in lines mode.
  void update(const progress_snapshot& s) {
    if (mode_ != progress_mode::bar) return;
    const auto now = std::chrono::steady_clock::now();
    if (drawn_ && s.iteration < s.total && now - last_draw_ < std::chrono::milliseconds(100))
      return;
    draw(s);
  }
  // Every log interval: a plain line, or a redraw of the bar.
  void log(const progress_snapshot& s) {
    if (mode_ == progress_mode::lines) {
      std::fprintf(stream_, "%s\n", line(s, false).c_str());
      std::fflush(stream_);
    } else if (mode_ == progress_mode::bar) {
      draw(s);
    }
  }
  // A line of its own (evaluation results, checkpoints, warnings).
  void message(const std::string& text) {
    if (mode_ == progress_mode::off) return;
    if (mode_ == progress_mode::bar && drawn_) std::fprintf(stream_, "\r\033[K");
    std::fprintf(stream_, "%s\n", text.c_str());
    if (mode_ == progress_mode::bar && drawn_) std::fprintf(stream_, "%s", last_line_.c_str());
    std::fflush(stream_);
  }
  void finish() {
    if (mode_ == progress_mode::bar && drawn_) {
      std::fprintf(stream_, "\n");
      std::fflush(stream_);
    }
    drawn_ = false;
  }

  // The text of one line (bar = true: with a [####....] bar).
  static std::string line(const progress_snapshot& s, bool bar) {
    char head[160];
    const double fraction =
        s.total > 0 ? static_cast<double>(s.iteration) / static_cast<double>(s.total) : 0;
    std::string text;
    if (bar) {
      constexpr int width = 20;
      const int filled = static_cast<int>(fraction * width);
      text = "[" + std::string(size_t(filled), '#') + std::string(size_t(width - filled), '.') +
             "] ";
    }
    std::snprintf(head, sizeof head, "%lld/%lld %5.1f%% | %.2f it/s | ETA %s | loss %.4f",
                  static_cast<long long>(s.iteration), static_cast<long long>(s.total),
                  100 * fraction, s.iterations_per_second, format_duration(s.eta_seconds).c_str(),
                  s.loss);
    text += head;
    if (s.terms.size() > 1 || (s.terms.size() == 1 && s.terms[0].first != "loss")) {
      text += " (";
      for (size_t k = 0; k < s.terms.size(); ++k) {
        char term[96];
        std::snprintf(term, sizeof term, "%s%s %.4f", k ? " " : "", s.terms[k].first.c_str(),
                      s.terms[k].second);
        text += term;
      }
      text += ")";
    }
    char tail[96];
    std::snprintf(tail, sizeof tail, " | lr %.3e | data wait %.1f%%", s.lr,
                  100 * s.data_wait_fraction);
    return text + tail;
  }

 private:
  void draw(const progress_snapshot& s) {
    last_line_ = line(s, true);
    std::fprintf(stream_, "\r\033[K%s", last_line_.c_str());
    std::fflush(stream_);
    drawn_ = true;
    last_draw_ = std::chrono::steady_clock::now();
  }

  std::FILE* stream_;
  progress_mode mode_;
  bool drawn_ = false;
  std::string last_line_;
  std::chrono::steady_clock::time_point last_draw_{};
};

}  // namespace segkit::train
