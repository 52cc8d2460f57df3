/**
 * gRPC server reflection (grpc.reflection.v1 and v1alpha, same messages)
 * over the generated descriptors: no npm package provides it for
 * Connect-ES. Answers list_services, file_by_filename,
 * file_containing_symbol (services, methods, messages, enums, enum values,
 * fields, extensions), file_containing_extension and
 * all_extension_numbers_of_type. A file is sent with its transitive
 * dependencies, each at most once per stream (as grpc-go does).
 */
import { type DescFile, type DescMessage, type DescService, toBinary } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { Code, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import { file_google_rpc_error_details } from "../gen/google/rpc/error_details_pb.js";
import type {
  ServerReflectionRequest,
  ServerReflectionResponse,
  ServerReflection as ServerReflectionV1,
} from "../gen/grpc/reflection/v1/reflection_pb.js";
import type { ServerReflection as ServerReflectionV1alpha } from "../gen/grpc/reflection/v1alpha/reflection_pb.js";

type ResponseInit = Omit<ServerReflectionResponse, "$typeName" | "originalRequest"> & {
  originalRequest?: ServerReflectionRequest;
};

/** What reflection knows: the served services and every file they need. */
interface Index {
  readonly services: readonly string[];
  readonly files: ReadonlyMap<string, DescFile>;
  readonly symbols: ReadonlyMap<string, DescFile>;
  readonly extensions: ReadonlyMap<string, ReadonlyMap<number, DescFile>>;
  readonly messages: ReadonlySet<string>;
}

function buildIndex(services: readonly DescService[], extraFiles: readonly DescFile[]): Index {
  const files = new Map<string, DescFile>();
  const symbols = new Map<string, DescFile>();
  const extensions = new Map<string, Map<number, DescFile>>();
  const messages = new Set<string>();

  const addMessage = (file: DescFile, message: DescMessage) => {
    symbols.set(message.typeName, file);
    messages.add(message.typeName);
    for (const field of message.fields) symbols.set(`${message.typeName}.${field.name}`, file);
    for (const oneof of message.oneofs) symbols.set(`${message.typeName}.${oneof.name}`, file);
    for (const nested of message.nestedMessages) addMessage(file, nested);
    for (const e of message.nestedEnums) {
      symbols.set(e.typeName, file);
      for (const value of e.values) symbols.set(`${message.typeName}.${value.name}`, file);
    }
    for (const ext of message.nestedExtensions) addExtension(file, ext);
  };
  const addExtension = (file: DescFile, ext: DescFile["extensions"][number]) => {
    symbols.set(ext.typeName, file);
    let byNumber = extensions.get(ext.extendee.typeName);
    if (!byNumber) {
      byNumber = new Map();
      extensions.set(ext.extendee.typeName, byNumber);
    }
    byNumber.set(ext.number, file);
  };
  const addFile = (file: DescFile) => {
    if (files.has(file.proto.name)) return;
    files.set(file.proto.name, file);
    for (const dependency of file.dependencies) addFile(dependency);
    const pkg = file.proto.package ? `${file.proto.package}.` : "";
    for (const service of file.services) {
      symbols.set(service.typeName, file);
      for (const method of service.methods) symbols.set(`${service.typeName}.${method.name}`, file);
    }
    for (const message of file.messages) addMessage(file, message);
    for (const e of file.enums) {
      symbols.set(e.typeName, file);
      for (const value of e.values) symbols.set(`${pkg}${value.name}`, file);
    }
    for (const ext of file.extensions) addExtension(file, ext);
  };
  for (const service of services) addFile(service.file);
  for (const file of extraFiles) addFile(file);
  return { services: services.map((s) => s.typeName), files, symbols, extensions, messages };
}

const encoded = new WeakMap<DescFile, Uint8Array>();
function fileBytes(file: DescFile): Uint8Array {
  let bytes = encoded.get(file);
  if (!bytes) {
    bytes = toBinary(FileDescriptorProtoSchema, file.proto);
    encoded.set(file, bytes);
  }
  return bytes;
}

/** One reflection stream: answers each request, sending each file once. */
function answer(index: Index, request: ServerReflectionRequest, sent: Set<string>): ResponseInit {
  const base = { validHost: request.host, originalRequest: request };
  const notFound = (what: string): ResponseInit => ({
    ...base,
    messageResponse: {
      case: "errorResponse",
      value: { errorCode: Code.NotFound, errorMessage: `${what} not found` } as never,
    },
  });
  // The requested file always, then its dependencies not sent on this stream yet.
  const files = (file: DescFile): ResponseInit => {
    const out = [fileBytes(file)];
    sent.add(file.proto.name);
    const queue = [...file.dependencies];
    for (let f = queue.shift(); f !== undefined; f = queue.shift()) {
      if (sent.has(f.proto.name)) continue;
      sent.add(f.proto.name);
      out.push(fileBytes(f));
      queue.push(...f.dependencies);
    }
    return {
      ...base,
      messageResponse: {
        case: "fileDescriptorResponse",
        value: { fileDescriptorProto: out } as never,
      },
    };
  };

  const message = request.messageRequest;
  switch (message.case) {
    case "listServices":
      return {
        ...base,
        messageResponse: {
          case: "listServicesResponse",
          value: { service: index.services.map((name) => ({ name })) } as never,
        },
      };
    case "fileByFilename": {
      const file = index.files.get(message.value);
      return file ? files(file) : notFound(`file ${message.value}`);
    }
    case "fileContainingSymbol": {
      const file = index.symbols.get(message.value.replace(/^\./, ""));
      return file ? files(file) : notFound(`symbol ${message.value}`);
    }
    case "fileContainingExtension": {
      const { containingType, extensionNumber } = message.value;
      const file = index.extensions.get(containingType)?.get(extensionNumber);
      return file ? files(file) : notFound(`extension ${extensionNumber} of ${containingType}`);
    }
    case "allExtensionNumbersOfType": {
      const type = message.value.replace(/^\./, "");
      if (!index.messages.has(type)) return notFound(`type ${type}`);
      return {
        ...base,
        messageResponse: {
          case: "allExtensionNumbersResponse",
          value: {
            baseTypeName: type,
            extensionNumber: [...(index.extensions.get(type)?.keys() ?? [])],
          } as never,
        },
      };
    }
    default:
      return {
        ...base,
        messageResponse: {
          case: "errorResponse",
          value: { errorCode: Code.InvalidArgument, errorMessage: "empty request" } as never,
        },
      };
  }
}

function createImpl(index: Index) {
  return {
    async *serverReflectionInfo(
      requests: AsyncIterable<ServerReflectionRequest>,
      _ctx: HandlerContext,
    ): AsyncIterable<ResponseInit> {
      const sent = new Set<string>();
      for await (const request of requests) yield answer(index, request, sent);
    },
  };
}

/**
 * Reflection services (v1 and v1alpha) describing `services` (pass every
 * served service, reflection and health included), and the error details
 * every error carries (google.rpc.ErrorInfo, RetryInfo), so that reflection
 * clients (grpcurl, buf curl) can decode them.
 */
export function createReflectionServices(services: readonly DescService[]): {
  v1: ServiceImpl<typeof ServerReflectionV1>;
  v1alpha: ServiceImpl<typeof ServerReflectionV1alpha>;
} {
  const index = buildIndex(services, [file_google_rpc_error_details]);
  return {
    v1: createImpl(index) as unknown as ServiceImpl<typeof ServerReflectionV1>,
    v1alpha: createImpl(index) as unknown as ServiceImpl<typeof ServerReflectionV1alpha>,
  };
}
