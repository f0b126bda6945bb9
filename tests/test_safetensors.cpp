// Tests of segkit/tensor/safetensors.hpp: round trips of every dtype, a file written by the
// Python reference writer (tests/reference/gen_safetensors_roundtrip.py), a table of malformed
// headers, every truncation of a valid file, atomic save, and a seeded mutation fuzz (run under
// ASan in CI) that must only ever parse or throw segkit::error.
#include <catch2/catch.hpp>

#include "scratch_dir.hpp"

#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <sys/resource.h>
#include <unistd.h>

#include "segkit/tensor/safetensors.hpp"

using namespace segkit;
using segkit::testing::scratch_dir;
namespace fs = std::filesystem;

namespace {

std::vector<uint8_t> read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

// A file from a header text and a data section, the header length written as given.
std::vector<uint8_t> make_file(const std::string& header, const std::vector<uint8_t>& data,
                               uint64_t header_length) {
  std::vector<uint8_t> out;
  for (int k = 0; k < 8; ++k) out.push_back(static_cast<uint8_t>(header_length >> (8 * k)));
  out.insert(out.end(), header.begin(), header.end());
  out.insert(out.end(), data.begin(), data.end());
  return out;
}
std::vector<uint8_t> make_file(const std::string& header, const std::vector<uint8_t>& data) {
  return make_file(header, data, header.size());
}


tensor_file sample_file() {
  tensor_file file;
  auto x = host_tensor<float>({2, 3});
  for (int64_t i = 0; i < x.numel(); ++i) x[i] = 0.5f * float(i) - 1.f;
  file.set("weight", x);
  auto labels = host_tensor<int32_t>({4});
  for (int64_t i = 0; i < 4; ++i) labels[i] = int32_t(i * 3 - 2);
  file.set("labels", labels);
  file.metadata()["format"] = "pt";
  return file;
}

}  // namespace

TEST_CASE("safetensors: round trip of every element type, metadata and names") {
  tensor_file file;
  auto f = host_tensor<float>({2, 3, 1, 2, 1});
  for (int64_t i = 0; i < f.numel(); ++i) f[i] = float(i) * -1.25f + 0.1f;
  auto i32 = from_vector<int32_t>({3}, {-2147483647 - 1, 0, 2147483647});
  auto u8 = from_vector<uint8_t>({2, 2}, {0, 1, 128, 255});
  auto i64 = from_vector<int64_t>({2}, {INT64_MIN, INT64_MAX});
  auto empty = host_tensor<float>({0, 4});
  file.set("z.float", f);
  file.set("a.int32", i32);
  file.set("m.uint8", u8);
  file.set("b.int64", i64);
  file.set("empty", empty);
  // The dtypes segkit tensors do not hold travel as raw bytes.
  const std::vector<std::pair<dtype, std::vector<uint8_t>>> raw = {
      {dtype::f64, {0, 0, 0, 0, 0, 0, 0xF0, 0x3F}},  // 1.0
      {dtype::f16, {0x00, 0x3C}},                    // 1.0
      {dtype::bf16, {0x80, 0x3F}},                   // 1.0
      {dtype::i8, {0x80}},
      {dtype::boolean, {1}},
  };
  for (const auto& [type, bytes] : raw)
    file.set_raw(std::string("raw.") + safetensors_name(type), type, {1}, bytes);
  file.metadata()["plain"] = "value";
  file.metadata()["escapes"] =
      "quote\" backslash\\ newline\n tab\t nul" + std::string(1, '\0') + " \x01";
  file.metadata()["utf8"] = "caf\xC3\xA9 \xF0\x9D\x9B\xBC";

  const std::vector<uint8_t> bytes = file.serialize();
  uint64_t header_length = 0;
  for (int k = 7; k >= 0; --k) header_length = header_length << 8 | bytes[size_t(k)];
  CHECK(header_length % 8 == 0);  // data 8-byte aligned

  const tensor_file back = tensor_file::parse(bytes, "roundtrip");
  CHECK(back.names() == file.names());
  const auto names = back.names();
  CHECK(std::is_sorted(names.begin(), names.end()));
  CHECK(back.metadata() == file.metadata());
  CHECK(to_vector(back.get<float>("z.float")) == to_vector(f));
  CHECK(back.shape_of("z.float") == f.shape());
  CHECK(to_vector(back.get<int32_t>("a.int32")) == to_vector(i32));
  CHECK(to_vector(back.get<uint8_t>("m.uint8")) == to_vector(u8));
  CHECK(to_vector(back.get<int64_t>("b.int64")) == to_vector(i64));
  CHECK(back.shape_of("empty") == shape{0, 4});
  CHECK(back.get<float>("empty").numel() == 0);
  for (const auto& [type, data] : raw) {
    const std::string name = std::string("raw.") + safetensors_name(type);
    CHECK(back.type_of(name) == type);
    CHECK(back.raw_bytes(name) == data);
  }
  // Serialising what was parsed gives the same bytes.
  CHECK(back.serialize() == bytes);

  scratch_dir dir("safetensors");
  file.save(dir.file("all.safetensors"));
  const tensor_file loaded = tensor_file::load(dir.file("all.safetensors"));
  CHECK(loaded.serialize() == bytes);
  CHECK(dir.entries() == std::vector<std::string>{"all.safetensors"});  // no temp file left
}

TEST_CASE("safetensors: get_float converts F64, F16 and BF16") {
  tensor_file file;
  auto le16 = [](std::initializer_list<uint16_t> values) {
    std::vector<uint8_t> out;
    for (uint16_t v : values) out.push_back(uint8_t(v & 0xFF)), out.push_back(uint8_t(v >> 8));
    return out;
  };
  // 1, -2, 65504 (max), 2^-24 (smallest subnormal), 2^-14 (smallest normal), 0.5, inf, -0
  file.set_raw("h", dtype::f16, {8},
               le16({0x3C00, 0xC000, 0x7BFF, 0x0001, 0x0400, 0x3800, 0x7C00, 0x8000}));
  file.set_raw("b", dtype::bf16, {3}, le16({0x3F80, 0x4049, 0xC2F7}));
  std::vector<uint8_t> f64(16);
  const double doubles[2] = {0.1, -3.0e38};
  std::memcpy(f64.data(), doubles, 16);
  file.set_raw("d", dtype::f64, {2, 1}, f64);
  file.set_raw("i", dtype::i8, {1}, {7});

  const auto h = to_vector(file.get_float("h"));
  CHECK(h == std::vector<float>{1.f, -2.f, 65504.f, std::ldexp(1.f, -24), std::ldexp(1.f, -14),
                                0.5f, INFINITY, -0.f});
  CHECK(std::signbit(h[7]));
  CHECK(to_vector(file.get_float("b")) == std::vector<float>{1.f, 3.140625f, -123.5f});
  CHECK(to_vector(file.get_float("d")) == std::vector<float>{0.1f, -3.0e38f});
  CHECK(file.get_float("d").shape() == shape{2, 1});
  CHECK_THROWS_AS(file.get_float("i"), dtype_error);
  CHECK_THROWS_WITH(file.get<float>("h"), Catch::Contains("F16") && Catch::Contains("get_float"));
}

TEST_CASE("safetensors: reads the file PyTorch's reference writer produced") {
  const std::string path = SEGKIT_GOLDEN_DIR "/safetensors_roundtrip.safetensors";
  const tensor_file file = tensor_file::load(path);
  CHECK(file.names() ==
        std::vector<std::string>{"a.f32", "b.i32", "c.u8", "d.i64", "e.f64", "empty", "scalar"});
  const auto f32 = file.get<float>("a.f32");
  REQUIRE(f32.shape() == shape{2, 3, 4});
  for (int64_t i = 0; i < 24; ++i) CHECK(f32[i] == float(i) * 0.25f - 3.f);
  const auto i32 = file.get<int32_t>("b.i32");
  REQUIRE(i32.shape() == shape{5});
  for (int64_t i = 0; i < 5; ++i) CHECK(i32[i] == int32_t(i * i * 1000 - 7));
  const auto u8 = file.get<uint8_t>("c.u8");
  REQUIRE(u8.shape() == shape{3, 4});
  for (int64_t i = 0; i < 12; ++i) CHECK(u8[i] == uint8_t((i * 37) % 256));
  const auto i64 = file.get<int64_t>("d.i64");
  REQUIRE(i64.shape() == shape{4});
  for (int64_t i = 0; i < 4; ++i) CHECK(i64[i] == i * 1000000000000LL - 5);
  REQUIRE(file.type_of("e.f64") == dtype::f64);
  REQUIRE(file.shape_of("e.f64") == shape{2, 1, 3});
  const auto& f64 = file.raw_bytes("e.f64");
  for (size_t i = 0; i < 6; ++i) {
    double v;
    std::memcpy(&v, f64.data() + 8 * i, 8);
    CHECK(v == 1.0 / double(i + 1));
  }
  CHECK(to_vector(file.get_float("e.f64"))[2] == float(1.0 / 3.0));
  CHECK(file.shape_of("scalar") == shape{1});  // rank 0 is read as [1]
  CHECK(file.get<float>("scalar")[0] == 3.5f);
  CHECK(file.shape_of("empty") == shape{0, 3});
  CHECK(file.metadata().at("format") == "pt");
  CHECK(file.metadata().at("generator") == "gen_safetensors_roundtrip.py");
  CHECK(file.metadata().at("text") == "caf\xC3\xA9 \xE2\x82\xAC \xF0\x9D\x9B\xBC \"q\"\\");

  CHECK_THROWS_AS(file.get<int32_t>("a.f32"), dtype_error);
  CHECK_THROWS_WITH(file.get<float>("missing"), Catch::Contains(path) &&
                                                    Catch::Contains("missing") &&
                                                    Catch::Contains("a.f32, b.i32"));
  CHECK_THROWS_AS(file.get<float>("missing"), io_error);
  CHECK_THROWS_WITH(tensor_file::load(path + ".nope"),
                    Catch::Contains(path + ".nope") && Catch::Contains("cannot open"));
}

TEST_CASE("safetensors: every truncation of a valid file is an io_error") {
  for (const auto& bytes : {read_all(SEGKIT_GOLDEN_DIR "/safetensors_roundtrip.safetensors"),
                            sample_file().serialize()}) {
    REQUIRE(bytes.size() > 100);
    REQUIRE_NOTHROW(tensor_file::parse(bytes, "whole"));
    for (size_t length = 0; length < bytes.size(); ++length) {
      INFO("prefix of " << length << " bytes");
      const std::vector<uint8_t> prefix(bytes.begin(), bytes.begin() + long(length));
      CHECK_THROWS_AS(tensor_file::parse(prefix, "cut.safetensors"), io_error);
    }
    // One byte too many is as wrong as one too few.
    auto longer = bytes;
    longer.push_back(0);
    CHECK_THROWS_WITH(tensor_file::parse(longer, "long.safetensors"),
                      Catch::Contains("long.safetensors") && Catch::Contains("trailing"));
  }
}

TEST_CASE("safetensors: flipping any header byte is an io_error") {
  const auto bytes = sample_file().serialize();
  uint64_t header_length = 0;
  for (int k = 7; k >= 0; --k) header_length = header_length << 8 | bytes[size_t(k)];
  for (size_t i = 0; i < 8 + header_length; ++i) {
    auto flipped = bytes;
    flipped[i] ^= 0xFF;  // an ASCII byte becomes a lone non-ASCII byte: never valid UTF-8
    INFO("flipped byte " << i);
    CHECK_THROWS_AS(tensor_file::parse(flipped, "flip.safetensors"), io_error);
  }
}

TEST_CASE("safetensors: malformed headers are rejected with a message naming the problem") {
  const std::vector<uint8_t> data(24, 0);  // room for a [2, 3] F32 tensor
  const auto entry = [](const std::string& body) { return "{\"w\":{" + body + "}}"; };
  const std::string good = R"("dtype":"F32","shape":[2,3],"data_offsets":[0,24])";
  REQUIRE(tensor_file::parse(make_file(entry(good), data), "good").shape_of("w") == shape{2, 3});

  struct bad_case {
    std::string header;
    std::string fragment;
    std::vector<uint8_t> data;
  };
  const std::vector<bad_case> cases = {
      {entry(R"("dtype":"F33","shape":[2,3],"data_offsets":[0,24])"), "F33", data},
      {entry(R"("dtype":"F32","shape":[2,3],"data_offsets":[0,20])"), "do not match shape [2, 3]",
       data},
      {entry(R"("dtype":"F32","shape":[2,3],"data_offsets":[0,28])"), "run past", data},
      {entry(R"("dtype":"F32","shape":[2,3],"data_offsets":[24,0])"), "end before begin", data},
      {entry(R"("dtype":"F32","shape":[2,3],"data_offsets":[0,24,48])"), "expected 2", data},
      {entry(R"("dtype":"F32","shape":[-2,3],"data_offsets":[0,24])"), "negative", data},
      {entry(R"("dtype":"F32","shape":[2.0,3],"data_offsets":[0,24])"), "not an integer", data},
      {entry(R"("dtype":"F32","shape":[2e0,3],"data_offsets":[0,24])"), "not an integer", data},
      {entry(R"("dtype":"F32","shape":[02,3],"data_offsets":[0,24])"), "leading zero", data},
      {entry(R"("dtype":"F32","shape":"2,3","data_offsets":[0,24])"), "expected '['", data},
      {entry(R"("dtype":"F32","shape":[1,1,1,1,2,3],"data_offsets":[0,24])"), "rank 6", data},
      {entry(R"("dtype":"F32","shape":[4294967296,4294967296,4],"data_offsets":[0,24])"),
       "more elements than int64", data},
      {entry(R"("dtype":"U8","shape":[2305843009213693952,2],"data_offsets":[0,24])"),
       "do not match", data},
      {entry(R"("dtype":"F32","shape":[99999999999999999999],"data_offsets":[0,24])"), "too large",
       data},
      {entry(R"("dtype":"F32","shape":[2,3])"), "lacks \"data_offsets\"", data},
      {entry(R"("shape":[2,3],"data_offsets":[0,24])"), "lacks \"dtype\"", data},
      {entry(R"("dtype":"F32","shape":[2,3],"data_offsets":[0,24],"extra":1)"), "unknown field",
       data},
      {entry(R"("dtype":"F32","dtype":"F32","shape":[2,3],"data_offsets":[0,24])"), "duplicate key",
       data},
      {entry(R"("dtype":F32,"shape":[2,3],"data_offsets":[0,24])"), "expected '\"'", data},
      {entry(good + ","), "expected '\"'", data},
      {R"({"w":{)" + good + R"(},"w":{)" + good + "}}", "duplicate key \"w\"", data},
      {R"({"w":{)" + good + R"(},"v":{"dtype":"F32","shape":[1],"data_offsets":[20,24]}})",
       "overlap", data},
      {R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", "hole",
       std::vector<uint8_t>(8, 0)},
      {R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", "trailing", data},
      {R"({"__metadata__":{"a":1},"w":{)" + good + "}}", "must be a string", data},
      {R"({"__metadata__":{"a":"x"},"__metadata__":{},"w":{)" + good + "}}", "duplicate key", data},
      {R"({"__metadata__":["a"],"w":{)" + good + "}}", "expected '{'", data},
      {R"({"__metadata__":{"a":"\q"}})", "invalid escape", {}},
      {R"({"__metadata__":{"a":"\ud800"}})", "surrogate", {}},
      {R"({"__metadata__":{"a":"\udc00"}})", "surrogate", {}},
      {R"({"__metadata__":{"a":"\u12G4"}})", "hex digit", {}},
      {R"({"__metadata__":{"a":"\u12"}})", "\\u", {}},
      {"{\"__metadata__\":{\"a\":\"tab\there\"}}", "control character", {}},
      {"{\"__metadata__\":{\"a\":\"\xC3\"}}", "UTF-8", {}},
      {"{\"__metadata__\":{\"a\":\"\xC0\x80\"}}", "UTF-8", {}},  // overlong NUL
      {R"({"__metadata__":{"a":"open})", "unterminated", {}},
      {R"({"w":{)" + good + "}} x", "after the header", data},
      {R"({"w":{)" + good + "}", "'}'", data},
      {R"({"w" {)" + good + "}}", "':'", data},
      {R"([{"w":1}])", "start with '{'", data},
      {"{", "too short", {}},
  };
  for (const auto& test : cases) {
    INFO("header: " << test.header);
    const auto bytes = make_file(test.header, test.data);
    CHECK_THROWS_AS(tensor_file::parse(bytes, "bad.safetensors"), io_error);
    CHECK_THROWS_WITH(tensor_file::parse(bytes, "bad.safetensors"),
                      Catch::Contains("bad.safetensors") && Catch::Contains(test.fragment));
  }

  const std::string header = entry(good);
  CHECK_THROWS_WITH(tensor_file::parse(make_file(header, data, header.size() + 100), "len.st"),
                    Catch::Contains("len.st") && Catch::Contains("past the end"));
  CHECK_THROWS_WITH(tensor_file::parse(make_file(header, data, uint64_t(1) << 60), "huge.st"),
                    Catch::Contains("huge.st") && Catch::Contains("100 MB"));
  CHECK_THROWS_WITH(tensor_file::parse(make_file(header, data, 0), "zero.st"),
                    Catch::Contains("zero.st"));
  CHECK_THROWS_WITH(tensor_file::parse({1, 2, 3}, "tiny.st"),
                    Catch::Contains("tiny.st") && Catch::Contains("3 bytes"));
  // Whitespace inside and after the JSON object is fine (the reference pads with spaces); the
  // header must start with '{' as the Rust reference requires.
  CHECK(tensor_file::parse(make_file("{\n}   ", {}), "ws").size() == 0);
  CHECK_THROWS_AS(tensor_file::parse(make_file(" {}", {}), "ws"), io_error);
  CHECK(tensor_file::parse(make_file("{}", {}), "empty").names().empty());
}

TEST_CASE("safetensors: set checks its arguments") {
  tensor_file file;
  CHECK_THROWS_AS(file.set("__metadata__", host_tensor<float>({1})), value_error);
  CHECK_THROWS_AS(file.set_raw("x", dtype::f16, {3}, {1, 2}), shape_error);
  file.metadata()["bad"] = "\xFF";
  CHECK_THROWS_AS(file.serialize(), value_error);
}

TEST_CASE("safetensors: save is atomic and names the file when it fails") {
  scratch_dir dir("safetensors");
  const std::string target = dir.file("model.safetensors");
  const tensor_file old_file = sample_file();
  old_file.save(target);
  const auto old_bytes = read_all(target);

  // A directory that does not exist.
  const std::string nowhere = dir.file("no/such/dir/model.safetensors");
  CHECK_THROWS_AS(old_file.save(nowhere), io_error);
  CHECK_THROWS_WITH(old_file.save(nowhere), Catch::Contains(nowhere));

  // A write that fails half way (the file size limit makes write() return EFBIG, even for
  // root): the old file keeps its bytes and no temp file is left behind.
  tensor_file big;
  big.set("big", host_tensor<float>::zeros({256, 1024}));
  {
    rlimit saved{};
    REQUIRE(getrlimit(RLIMIT_FSIZE, &saved) == 0);
    rlimit small = saved;
    small.rlim_cur = 64 * 1024;
    const auto previous_handler = std::signal(SIGXFSZ, SIG_IGN);
    REQUIRE(setrlimit(RLIMIT_FSIZE, &small) == 0);
    bool threw = false;
    std::string message;
    try {
      big.save(target);
    } catch (const io_error& e) {
      threw = true;
      message = e.what();
    }
    setrlimit(RLIMIT_FSIZE, &saved);
    std::signal(SIGXFSZ, previous_handler);
    CHECK(threw);
    CHECK_THAT(message, Catch::Contains(target) && Catch::Contains("unchanged"));
  }
  CHECK(read_all(target) == old_bytes);
  CHECK(dir.entries() == std::vector<std::string>{"model.safetensors"});

  // Renaming over a directory fails; the temp file is removed.
  fs::create_directories(dir.path / "occupied");
  CHECK_THROWS_WITH(old_file.save(dir.file("occupied")),
                    Catch::Contains(dir.file("occupied")) && Catch::Contains("rename"));
  CHECK(dir.entries() == std::vector<std::string>{"model.safetensors", "occupied"});

  // And a successful save replaces the file whole.
  big.save(target);
  CHECK(tensor_file::load(target).shape_of("big") == shape{256, 1024});
  CHECK(dir.entries() == std::vector<std::string>{"model.safetensors", "occupied"});
}

TEST_CASE("safetensors: 2000 seeded mutations parse or throw segkit::error, never crash") {
  const std::vector<std::vector<uint8_t>> seeds = {
      read_all(SEGKIT_GOLDEN_DIR "/safetensors_roundtrip.safetensors"), sample_file().serialize()};
  const std::string specials = "\"{}[],:\\0123456789-.eu ";
  std::mt19937 rng(20240611);
  int parsed = 0, rejected = 0;
  for (int round = 0; round < 2000; ++round) {
    auto bytes = seeds[size_t(round) % seeds.size()];
    const int mutations = 1 + int(rng() % 3);
    for (int m = 0; m < mutations && !bytes.empty(); ++m) {
      // Mostly hit the header, where the parser works.
      const size_t header_end = std::min<size_t>(bytes.size(), 8 + bytes[0] + 256 * bytes[1]);
      const size_t at =
          (rng() % 4 ? rng() % std::max<size_t>(1, header_end) : rng() % bytes.size());
      switch (rng() % 7) {
        case 0: bytes[at] ^= uint8_t(1u << (rng() % 8)); break;
        case 1: bytes[at] = uint8_t(rng()); break;
        case 2: bytes[at] = uint8_t(specials[rng() % specials.size()]); break;
        case 3: bytes.resize(at); break;
        case 4:
          bytes.insert(bytes.begin() + long(at), uint8_t(specials[rng() % specials.size()]));
          break;
        case 5: bytes.erase(bytes.begin() + long(at)); break;
        case 6: bytes[rng() % std::min<size_t>(8, bytes.size())] = uint8_t(rng()); break;
      }
    }
    try {
      const tensor_file file = tensor_file::parse(bytes, "fuzz");
      for (const auto& name : file.names()) {
        const dtype type = file.type_of(name);
        if (type == dtype::f32 || type == dtype::f64 || type == dtype::f16 || type == dtype::bf16)
          (void)file.get_float(name);
      }
      // Whatever parsed must serialise and parse again.
      (void)tensor_file::parse(file.serialize(), "fuzz again");
      ++parsed;
    } catch (const segkit::error&) {
      ++rejected;
    }
  }
  CHECK(parsed > 0);
  CHECK(rejected > 0);
}
