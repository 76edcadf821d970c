{
  "targets": [
    {
      "target_name": "fastwal",
      "sources": [
        "native/crc32c.cc",
        "native/codec.cc",
        "native/file_io.cc",
        "native/binding.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_DISABLE_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions"],
      "cflags_cc": ["-std=c++17", "-O3", "-Wall", "-Wextra", "-Werror", "-Wno-unused-parameter"],
      "xcode_settings": {
        "GCC_ENABLE_CPP_EXCEPTIONS": "YES",
        "CLANG_CXX_LANGUAGE_STANDARD": "c++17",
        "MACOSX_DEPLOYMENT_TARGET": "10.15",
        "GCC_TREAT_WARNINGS_AS_ERRORS": "YES",
        "OTHER_CPLUSPLUSFLAGS": ["-O3", "-Wall", "-Wextra", "-Wno-unused-parameter"]
      },
      "msvs_settings": {
        "VCCLCompilerTool": { "ExceptionHandling": 1, "WarningLevel": 3, "WarnAsError": "true", "AdditionalOptions": ["/std:c++17"] }
      }
    }
  ]
}
