// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

/// @notice Dev-chain stand-in for GliskNFT: the same mint rules, the same BatchMinted event and
/// the same supply views (`nextTokenId()`, `totalSupply()`: ERC721Enumerable semantics, ids
/// contiguous from 1, no burn, so totalSupply() == nextTokenId() - 1), without ERC721 storage. No per-token writes keeps a mint at ~29k gas, so ~1,000 mints fit in a
/// 30M-gas block and tests can build histories of thousands of mints in seconds.
contract GliskNFT {
    /// topic0 = 0x20c0d4a5bab7118059cf1d2fd0403c4f29a05e446d435b347f90b80778374c54
    event BatchMinted(
        address indexed minter,
        address indexed promptAuthor,
        uint256 indexed startTokenId,
        uint256 quantity,
        uint256 totalPaid
    );

    error InvalidQuantity(uint256 quantity);
    error InsufficientPayment(uint256 required, uint256 paid);

    uint256 public constant MAX_BATCH = 50;
    uint256 public immutable mintPrice;
    /// Token ids are contiguous from 1, like the real contract.
    uint256 public nextTokenId = 1;

    constructor(uint256 mintPrice_) {
        mintPrice = mintPrice_;
    }

    /// Overpayment is accepted and reported in full as totalPaid (the real contract does the same).
    function mint(address promptAuthor, uint256 quantity) external payable {
        if (quantity == 0 || quantity > MAX_BATCH) revert InvalidQuantity(quantity);
        uint256 required = mintPrice * quantity;
        if (msg.value < required) revert InsufficientPayment(required, msg.value);
        uint256 start = nextTokenId;
        nextTokenId = start + quantity;
        emit BatchMinted(msg.sender, promptAuthor, start, quantity, msg.value);
    }

    /// ERC721Enumerable's count of live tokens: every id minted so far (nothing is burned).
    function totalSupply() external view returns (uint256) {
        return nextTokenId - 1;
    }
}
