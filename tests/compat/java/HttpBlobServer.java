// HttpBlobServer PORT DIR WORKERS - the JDK's built-in HTTP server
// (com.sun.net.httpserver) serving every file of DIR from memory, the way
// JVM servers use threads: one dispatcher thread waits in an epoll Selector
// for requests, and worker threads of an Executor answer them with blocking
// writes of the whole response (the JDK takes the connection out of the
// selector and makes it blocking for the exchange, then registers it again
// from the dispatcher after a wakeup).
//   GET /f/NAME  the file in one write(byte[]) call
//   GET /p/NAME  the file in pieces of 1 MiB + 1 bytes, each flushed
// SIGTERM runs the shutdown hook: stop the server, print the counts, exit.
import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import java.io.IOException;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.Map;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.atomic.AtomicLong;

public final class HttpBlobServer {
  private static final int PIECE = 1048576 + 1;

  public static void main(String[] args) throws Exception {
    int port = Integer.parseInt(args[0]);
    Path dir = Path.of(args[1]);
    int workers = Integer.parseInt(args[2]);
    Map<String, byte[]> files = new HashMap<>();
    try (DirectoryStream<Path> ds = Files.newDirectoryStream(dir)) {
      for (Path p : ds) files.put(p.getFileName().toString(), Files.readAllBytes(p));
    }
    AtomicLong responses = new AtomicLong(), bytes = new AtomicLong(), errors = new AtomicLong();
    HttpServer srv = HttpServer.create(new InetSocketAddress(InetAddress.getByName("127.0.0.1"), port), 64);
    ExecutorService pool = Executors.newFixedThreadPool(workers);
    srv.createContext("/", (HttpExchange ex) -> {
      try {
        String path = ex.getRequestURI().getPath();
        byte[] body = path.length() > 3 ? files.get(path.substring(3)) : null;
        boolean pieces = path.startsWith("/p/");
        if (body == null || !(pieces || path.startsWith("/f/"))) {
          ex.sendResponseHeaders(404, -1);
          return;
        }
        ex.getResponseHeaders().set("Content-Type", "application/octet-stream");
        ex.sendResponseHeaders(200, body.length);
        try (OutputStream os = ex.getResponseBody()) {
          if (!pieces) {
            os.write(body);
          } else {
            for (int off = 0; off < body.length; off += PIECE) {
              os.write(body, off, Math.min(PIECE, body.length - off));
              os.flush();
            }
          }
        }
        responses.incrementAndGet();
        bytes.addAndGet(body.length);
      } catch (IOException e) {
        errors.incrementAndGet();
        System.err.println("worker: " + e);
        throw e;
      } finally {
        ex.close();
      }
    });
    srv.setExecutor(pool);
    srv.start();
    Runtime.getRuntime().addShutdownHook(new Thread(() -> {
      srv.stop(0);
      pool.shutdownNow();
      System.out.println("served " + responses + " responses, " + bytes + " bytes, " + errors + " errors");
    }));
    System.out.println("listening on " + port + " with " + workers + " workers, " + files.size() + " files");
  }
}
