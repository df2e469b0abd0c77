// The linter: typescript-eslint's recommended rules, plus the type-aware
// ones that catch real bugs in an event-driven server (a promise nobody
// awaits or catches is an unhandled rejection waiting to happen). Layout is
// Prettier's job (npm run format), not the linter's.
import js from "@eslint/js";
import tseslint from "typescript-eslint";

export default tseslint.config(
  {
    ignores: [
      "gen/**",
      "dist/**",
      "packages/*/dist/**",
      "node_modules/**",
      "examples/**",
      "bench/results/**",
      "src/dashboard/page/*.js",
    ],
  },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    // Plain JavaScript that runs before anything is built (npm's prestart).
    files: ["scripts/**/*.mjs"],
    languageOptions: { globals: { process: "readonly", console: "readonly" } },
  },
  {
    files: ["**/*.ts"],
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      "@typescript-eslint/no-floating-promises": "error",
      "@typescript-eslint/no-misused-promises": ["error", { checksVoidReturn: false }],
      "@typescript-eslint/no-unused-vars": [
        "error",
        { argsIgnorePattern: "^_", varsIgnorePattern: "^_", caughtErrors: "none" },
      ],
      "@typescript-eslint/consistent-type-imports": ["error", { fixStyle: "inline-type-imports" }],
      "no-empty": ["error", { allowEmptyCatch: true }],
      // A variable a closure reads before it is assigned (set up in two steps) stays let.
      "prefer-const": ["error", { ignoreReadBeforeAssign: true }],
      // We replace low-level errors with messages written for the person who
      // must fix the input, on purpose; the cause is logged where it matters.
      "preserve-caught-error": "off",
    },
  },
  {
    // The wire room holds byte formats only: it imports src/protocol/, gen/
    // and protobuf-es, nothing of the server and no I/O (docs/architecture.md).
    files: ["src/wire/**/*.ts"],
    rules: {
      "no-restricted-imports": [
        "error",
        {
          patterns: [
            {
              regex: "^(?!\\./|\\.\\./protocol/|\\.\\./\\.\\./gen/|@bufbuild/protobuf(/|$))",
              message: "src/wire/ imports only src/protocol/, gen/ and @bufbuild/protobuf",
            },
          ],
        },
      ],
    },
  },
  {
    // What the server and the SDK share: gen/ and protobuf-es only.
    files: ["src/protocol/**/*.ts"],
    rules: {
      "no-restricted-imports": [
        "error",
        {
          patterns: [
            {
              regex: "^(?!\\./|\\.\\./\\.\\./gen/|@bufbuild/protobuf(/|$))",
              message: "src/protocol/ imports only gen/ and @bufbuild/protobuf",
            },
          ],
        },
      ],
    },
  },
  {
    // The core imports no transport and nothing above it (docs/architecture.md).
    files: ["src/core/**/*.ts"],
    rules: {
      "no-restricted-imports": [
        "error",
        {
          patterns: [
            {
              regex: "^(?!\\./|\\.\\./(protocol|wire)/|\\.\\./\\.\\./gen/|@bufbuild/protobuf(/|$)|node:crypto$)",
              message: "src/core/ imports only src/protocol/, src/wire/, gen/, @bufbuild/protobuf and node:crypto",
            },
          ],
        },
      ],
    },
  },
  {
    // The SDK bundles for browsers and imports nothing of the server.
    files: ["src/client/**/*.ts"],
    rules: {
      "no-restricted-imports": [
        "error",
        {
          patterns: [
            {
              regex:
                "^(?!\\./|\\.\\./protocol/|\\.\\./wire/client-json\\.js$|\\.\\./\\.\\./gen/|@bufbuild/protobuf(/|$))",
              message:
                "src/client/ imports only src/protocol/, src/wire/client-json.ts (its JSON encoding), gen/ and @bufbuild/protobuf",
            },
          ],
        },
      ],
    },
  },
  {
    // The SDK's JSON path loads nothing of protobuf-es, so that a JSON-only
    // bundle holds none of it: types only, from it and from gen/ (which
    // loads it). The binary encoding is src/client/proto.ts, an entry point
    // of its own (test/sdk-package.test.ts measures both bundles).
    files: ["src/client/**/*.ts", "src/wire/client-json.ts"],
    ignores: ["src/client/proto.ts"],
    rules: {
      "@typescript-eslint/no-restricted-imports": [
        "error",
        {
          patterns: [
            {
              group: ["@bufbuild/protobuf", "@bufbuild/protobuf/*", "**/gen/**", "./proto.js"],
              allowTypeImports: true,
              message:
                "the SDK's JSON path imports only types of protobuf-es and gen/; what needs them at run time goes in src/client/proto.ts",
            },
          ],
        },
      ],
    },
  },
  {
    files: ["test/**/*.ts", "bench/**/*.ts"],
    rules: {
      "@typescript-eslint/no-non-null-assertion": "off",
      "@typescript-eslint/no-explicit-any": "off",
      "@typescript-eslint/no-unsafe-function-type": "off",
      "@typescript-eslint/consistent-type-imports": "off",
    },
  },
);
