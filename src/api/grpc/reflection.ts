/**
 * gRPC server reflection (https://github.com/grpc/grpc/blob/master/doc/server-reflection.md),
 * both grpc.reflection.v1 and grpc.reflection.v1alpha, answered from the
 * descriptors in gen/ so that grpcurl and `buf curl` need no proto files.
 */
import {
  create,
  fromBinary,
  toBinary,
  type DescEnum,
  type DescExtension,
  type DescFile,
  type DescMessage,
  type DescService,
  type MessageShape,
} from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import type * as grpc from "@grpc/grpc-js";
import {
  ErrorResponseSchema,
  ExtensionNumberResponseSchema,
  FileDescriptorResponseSchema,
  ListServiceResponseSchema,
  ServerReflection as ServerReflectionV1,
  ServerReflectionRequestSchema as RequestV1,
  ServerReflectionResponseSchema as ResponseV1,
} from "../../../gen/grpc/reflection/v1/reflection_pb.js";
import {
  ServerReflection as ServerReflectionV1alpha,
  ServerReflectionRequestSchema as RequestV1alpha,
  ServerReflectionResponseSchema as ResponseV1alpha,
} from "../../../gen/grpc/reflection/v1alpha/reflection_pb.js";
import { Code } from "../../protocol/status-codes.js";
import { addService, type AddServiceOptions } from "./adapter.js";

/** The two reflection services, each with the impl to pass to addService. */
export interface Reflection {
  readonly v1: { service: typeof ServerReflectionV1; impl: ServiceImpl<typeof ServerReflectionV1> };
  readonly v1alpha: { service: typeof ServerReflectionV1alpha; impl: ServiceImpl<typeof ServerReflectionV1alpha> };
}

/**
 * Creates both reflection services for a server that serves `services`.
 * They describe those services, the two reflection services themselves, and
 * every file those import, transitively. Guarantees:
 * - list_services names each of them once;
 * - file_by_filename and file_containing_symbol (a service, method, message,
 *   field, enum, enum value or extension, fully qualified) answer the file
 *   first, then those of its transitive imports not yet sent on this stream
 *   (as grpc-go does), each a serialized FileDescriptorProto;
 * - file_containing_extension and all_extension_numbers_of_type answer from
 *   the extensions declared in those files;
 * - anything unknown is an error_response NOT_FOUND, a request without a
 *   question INVALID_ARGUMENT, and the stream stays open.
 * v1alpha is wire-identical to v1 and is answered by the same code.
 */
export function createReflection(services: readonly DescService[]): Reflection {
  const index = indexFiles([...services, ServerReflectionV1, ServerReflectionV1alpha]);
  const v1: ServiceImpl<typeof ServerReflectionV1> = {
    async *serverReflectionInfo(requests) {
      const sent = new Set<DescFile>();
      for await (const request of requests) yield answer(index, request, sent);
    },
  };
  const v1alpha: ServiceImpl<typeof ServerReflectionV1alpha> = {
    async *serverReflectionInfo(requests, ctx) {
      async function* asV1() {
        for await (const request of requests) yield fromBinary(RequestV1, toBinary(RequestV1alpha, request));
      }
      for await (const response of v1.serverReflectionInfo(asV1(), ctx)) {
        yield fromBinary(ResponseV1alpha, toBinary(ResponseV1, create(ResponseV1, response)));
      }
    },
  };
  return {
    v1: { service: ServerReflectionV1, impl: v1 },
    v1alpha: { service: ServerReflectionV1alpha, impl: v1alpha },
  };
}

/** Adds both reflection services (see {@link createReflection}) to a grpc-js server. */
export function addReflection(
  server: grpc.Server,
  services: readonly DescService[],
  options?: AddServiceOptions,
): void {
  const reflection = createReflection(services);
  addService(server, reflection.v1.service, reflection.v1.impl, options);
  addService(server, reflection.v1alpha.service, reflection.v1alpha.impl, options);
}

/** Everything reflection can be asked about, built once per server. */
interface FileIndex {
  services: string[];
  files: Map<string, DescFile>;
  symbols: Map<string, DescFile>;
  /** Message type name → extension number → the file declaring the extension. */
  extensions: Map<string, Map<number, DescFile>>;
  /** Serialized FileDescriptorProto of each file. */
  bytes: Map<DescFile, Uint8Array>;
}

function indexFiles(services: readonly DescService[]): FileIndex {
  const index: FileIndex = {
    services: [],
    files: new Map(),
    symbols: new Map(),
    extensions: new Map(),
    bytes: new Map(),
  };
  const addSymbol = (name: string, file: DescFile) => index.symbols.set(name, file);
  const addEnum = (desc: DescEnum) => {
    addSymbol(desc.typeName, desc.file);
    // Enum values are scoped as siblings of their enum.
    const scope = desc.typeName.slice(0, desc.typeName.length - desc.name.length);
    for (const value of desc.values) addSymbol(scope + value.name, desc.file);
  };
  const addExtension = (desc: DescExtension) => {
    addSymbol(desc.typeName, desc.file);
    let numbers = index.extensions.get(desc.extendee.typeName);
    if (!numbers) index.extensions.set(desc.extendee.typeName, (numbers = new Map()));
    numbers.set(desc.number, desc.file);
  };
  const addMessage = (desc: DescMessage) => {
    addSymbol(desc.typeName, desc.file);
    for (const field of desc.fields) addSymbol(`${desc.typeName}.${field.name}`, desc.file);
    for (const oneof of desc.oneofs) addSymbol(`${desc.typeName}.${oneof.name}`, desc.file);
    desc.nestedMessages.forEach(addMessage);
    desc.nestedEnums.forEach(addEnum);
    desc.nestedExtensions.forEach(addExtension);
  };
  const addFile = (file: DescFile) => {
    if (index.bytes.has(file)) return;
    index.bytes.set(file, toBinary(FileDescriptorProtoSchema, file.proto));
    index.files.set(file.proto.name, file);
    file.messages.forEach(addMessage);
    file.enums.forEach(addEnum);
    file.extensions.forEach(addExtension);
    for (const service of file.services) {
      addSymbol(service.typeName, file);
      for (const method of service.methods) addSymbol(`${service.typeName}.${method.name}`, file);
    }
    file.dependencies.forEach(addFile);
  };
  for (const service of services) {
    if (!index.services.includes(service.typeName)) index.services.push(service.typeName);
    addFile(service.file);
  }
  return index;
}

type Request = MessageShape<typeof RequestV1>;
type Response = MessageShape<typeof ResponseV1>;
type Answer = Response["messageResponse"];

function answer(index: FileIndex, request: Request, sent: Set<DescFile>): Response {
  return create(ResponseV1, {
    validHost: request.host,
    originalRequest: request,
    messageResponse: lookUp(index, request.messageRequest, sent),
  });
}

function lookUp(index: FileIndex, question: Request["messageRequest"], sent: Set<DescFile>): Answer {
  switch (question.case) {
    case "listServices":
      return {
        case: "listServicesResponse",
        value: create(ListServiceResponseSchema, {
          service: index.services.map((name) => ({ name })),
        }),
      };
    case "fileByFilename": {
      const file = index.files.get(question.value);
      return file ? withImports(index, file, sent) : notFound(`file "${question.value}" not found`);
    }
    case "fileContainingSymbol": {
      const file = index.symbols.get(question.value);
      return file ? withImports(index, file, sent) : notFound(`symbol "${question.value}" not found`);
    }
    case "fileContainingExtension": {
      const { containingType, extensionNumber } = question.value;
      const file = index.extensions.get(containingType)?.get(extensionNumber);
      return file
        ? withImports(index, file, sent)
        : notFound(`extension ${extensionNumber} of "${containingType}" not found`);
    }
    case "allExtensionNumbersOfType": {
      const type = question.value;
      const numbers = index.extensions.get(type);
      if (!numbers && !isMessageType(index, type)) return notFound(`type "${type}" not found`);
      return {
        case: "allExtensionNumbersResponse",
        value: create(ExtensionNumberResponseSchema, {
          baseTypeName: type,
          extensionNumber: [...(numbers?.keys() ?? [])].sort((a, b) => a - b),
        }),
      };
    }
    default:
      return error(Code.InvalidArgument, "the request asks nothing");
  }
}

function isMessageType(index: FileIndex, typeName: string): boolean {
  const file = index.symbols.get(typeName);
  if (!file) return false;
  const find = (messages: DescMessage[]): boolean =>
    messages.some((m) => m.typeName === typeName || find(m.nestedMessages));
  return find(file.messages);
}

/** The file, then its transitive imports that this stream has not received yet. */
function withImports(index: FileIndex, file: DescFile, sent: Set<DescFile>): Answer {
  const files: Uint8Array[] = [];
  const visit = (f: DescFile, requested: boolean) => {
    if (!requested && sent.has(f)) return;
    sent.add(f);
    files.push(index.bytes.get(f)!);
    for (const dependency of f.dependencies) visit(dependency, false);
  };
  visit(file, true);
  return {
    case: "fileDescriptorResponse",
    value: create(FileDescriptorResponseSchema, { fileDescriptorProto: files }),
  };
}

function notFound(message: string): Answer {
  return error(Code.NotFound, message);
}

/** An error_response: its code is the gRPC status code. */
function error(code: Code, message: string): Answer {
  return {
    case: "errorResponse",
    value: create(ErrorResponseSchema, { errorCode: code, errorMessage: message }),
  };
}
