using System.Text.Json.Nodes;
using System.Text.Json.Serialization;

namespace Lattice.Client.Json;

[JsonSerializable(typeof(JsonObject))]
internal sealed partial class NodeContext : JsonSerializerContext;
